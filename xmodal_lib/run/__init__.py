"""Running the notebooks: ``params`` (notebook parameters -> configs), ``plan`` (what a reproduce run
takes), ``runner`` (papermill), ``results`` (results JSON), ``manifest`` (environment facts),
``report`` (headline metrics).
"""
