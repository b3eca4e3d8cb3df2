"""`lamina plan`: a traffic trace replayed through the engine's own concurrency rules and
pool policy in virtual time (replay.py), with what it costs (report.py, prices.json), a
chart against the limits (chart.py, page.py), a search for settings (recommend.py) and a
check against a real server (validate.py)."""
