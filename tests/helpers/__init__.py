"""Test helpers: a scripted server for the core, the pool drivers, the in-memory pool harness."""
