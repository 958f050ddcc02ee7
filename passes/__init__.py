"""amc.passes"""
