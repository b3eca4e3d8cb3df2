"""Every AWS service other than Lambda, one package each: its operations (the provider
the gateway dispatches to), its state and its store module.

Services sit beside `control/` (Lambda's own resources) and above the engine. They reach
Lambda only through small interfaces the engine defines (engine/pollers/sources.py: how
an event source mapping reads a queue or a stream), never the other way round.
"""
