"""The command line: one small module per subcommand; the work happens in the library."""
