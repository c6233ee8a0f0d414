"""The one training engine of every method: ``train`` (``TrainConfig``, ``fit``, schedules),
``loop`` (fit's parts: setup, step, checkpoint, validation), ``resume``, ``loader`` (data order).
"""
