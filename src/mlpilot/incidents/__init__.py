"""Incidents: symptoms (alerts) grouped into incidents with a lifecycle; diagnosis and healing build on them."""
