"""Settings: the experiment configs, their checks and the flag table."""
