"""Your app: the HTTP API (api.py), its tables (models.py) and the scheduled job (purge.py), on lib.dbkit."""
