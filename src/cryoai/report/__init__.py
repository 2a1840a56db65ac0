"""The run report: ``write_report(OUT)`` → OUT/report.html (self-contained) and OUT/view.cxc.

Modules: ``run`` reads the run folder and compares with ground truth, ``plots`` draws the
figures (PNG bytes), ``summary`` writes the opening text, ``chimerax`` the ChimeraX script,
``html`` assembles the page. Import from ``cryoai.report.html`` (matplotlib loads there).
"""
