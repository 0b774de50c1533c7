"""Editing methods behind one contract (see editors.base)."""
