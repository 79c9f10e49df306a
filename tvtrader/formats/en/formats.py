"""English formats, overridden: `2026-12-02 11:20:01 UTC`, not `Dec. 2, 2026, 11:20 a.m.`"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
