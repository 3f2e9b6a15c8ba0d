"""Inbound mail: routes, and the SMTP server that receives mail for customers' domains."""
