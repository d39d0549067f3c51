"""The PyTorch tutorial notes' lessons, one runnable module each (`python -m foundations.<lesson>`)."""
