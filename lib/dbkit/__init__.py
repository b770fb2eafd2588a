"""The reusable database kit for Neon on Lambda: keep it as it is; it never imports the app."""
