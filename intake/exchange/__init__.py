"""Exchange with other systems: incidents as NENA EIDO JSON and OASIS CAP 1.2 XML, signed webhooks."""
