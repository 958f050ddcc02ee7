"""amc.targets"""
