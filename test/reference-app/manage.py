#!/usr/bin/env python3
"""manage.py of the reference app: settings come from DJANGO_SETTINGS_MODULE (the rendered .env)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refapp.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
