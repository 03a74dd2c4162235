"""One audit from end to end: run the methods and tests on a model, judge it by declarative
conditions, compare models."""
