"""Report: one self-contained HTML page of a results database (tables and inline PNG plots).

``data`` reads campaigns, their roles and predictions and groups critical faults into cases;
``plots`` draws the figures; ``page`` holds the HTML pieces; ``build`` assembles the page.
"""

from drivefi.report.build import build_report

__all__ = ["build_report"]
