"""core: the numerical flow image -> blob -> heads -> candidates -> detections.

Arrays in, arrays out; imports nothing of the project outside ``core``.
"""
