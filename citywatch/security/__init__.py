"""Security: per-device broker credentials (devices), the broker's TLS material (tls).

Example:
    $ citywatch devices add lamp-0001 --district central --family streetlight
"""
