"""amc.calibration"""
