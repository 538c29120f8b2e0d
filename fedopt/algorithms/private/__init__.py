"""Differentially private algorithms."""
