"""Date and time formats for the console (FORMAT_MODULE_PATH): seconds and the time zone on
every time, ISO dates; the same whatever the browser's language."""
