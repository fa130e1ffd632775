"""Alert notifier: routes citywatch.alerts to crews, keeps work orders, serves the crew API."""
