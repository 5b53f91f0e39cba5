"""The reporting: results on disk -> tables, figures, and the papers' numbers beside them.

- ``tables``: one experiment's result JSONs -> Markdown, CSV and LaTeX tables;
- ``table_html``: a table's Markdown as a standalone HTML page;
- ``plots``: an experiment's figure (learning curves, calibration, sanity, transfer);
- ``published``: the numbers printed in the papers (``reporting/reference/paper_numbers.yaml``),
  matched to a table's rows and columns.

Belongs here: what reads the library's output files and shows them; nothing here
trains or evaluates, and nothing imports torch.

May import: the floor (``io``, ``errors``, ``devices``) and ``data.noise`` (the noise-name grammar a figure parses).
"""
