"""The reporting: results on disk -> tables, figures, and the papers' numbers beside them.

- ``tables``: one experiment's result JSONs -> Markdown, CSV and LaTeX tables;
- ``table_html``: a table's Markdown as a standalone HTML page;
- ``plots``: an experiment's figure (learning curves, calibration, sanity, transfer);
- ``published``: the numbers printed in the papers (``reporting/reference/paper_numbers.yaml``),
  matched to a table's rows and columns.
- ``verdicts``: the statistics that judge a cell against the paper and test a claim (scipy.stats);
- ``verdict_page``: every table's verdicts and every claim of a results directory on one page.

Belongs here: what reads the library's output files and shows them; nothing here
trains or evaluates, and nothing imports torch.

May import: the floor (``io``, ``errors``, ``devices``) and ``data.noise`` (the noise-name grammar a figure parses).
"""
