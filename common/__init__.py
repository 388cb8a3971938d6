"""Plumbing shared by the four model scripts: data, figures, command line and run outputs.

Model code (layers, losses, callbacks) stays in the scripts; each script chooses the Keras
backend itself, before it imports Keras.
"""
