"""Typed settings, one module per stage (and ``platform`` for what they share); the
sections are composed into ``custseg.config.Config``, which loads them. Lower layer: no
stage is imported (``docs/architecture.md``)."""
