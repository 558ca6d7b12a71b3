"""Test support: the fault corpora, their judges and runners (the fault table of docs/reliability.md), and
the setups the tests and the fault table share. Not part of the installed package; nothing in src/ imports it."""
