"""SSL Explorer's desktop app (PySide6 + pyqtgraph). Holds no SSL math: it drives ssl_engine."""
