"""Every setting of ``.env.example`` shown to reach behaviour (see ``test_every_setting.py``)."""
