"""cryoai: amortized ab initio cryo-EM reconstruction (cryoAI and beyond)."""

__version__ = "0.1.0"
