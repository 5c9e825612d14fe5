"""The `switchboard` command line. Heavy packages are imported inside commands, never at start-up."""
