"""Plumbing shared by the four model scripts: data, figures, command line and run outputs.

Importing this package before Keras selects the TensorFlow backend and quiets TensorFlow's
start-up log; model code stays in the scripts.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
