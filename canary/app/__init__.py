"""The application: the CLI and its commands, and the demo. The only code that imports the families
and the drills to assemble them (the listener itself assembles sources from the registry)."""
