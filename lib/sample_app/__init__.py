"""The notes sample app: replace it with your own (it uses lib.dbkit; nothing in lib.dbkit uses it)."""
