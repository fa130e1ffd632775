"""``python -m citywatch``: the same command line as the ``citywatch`` script.

Example:
    $ python -m citywatch stack up
"""

from citywatch.cli import main

main()
