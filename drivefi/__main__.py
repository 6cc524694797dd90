from drivefi.cli import entry

entry()
