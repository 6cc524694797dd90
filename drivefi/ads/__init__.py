"""Old home of the stacks under test, kept for agent files written against it (see
:mod:`drivefi.ads.agent_loader`); the stacks live in :mod:`drivefi.stacks`."""
