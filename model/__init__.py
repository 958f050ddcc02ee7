"""amc.model"""
