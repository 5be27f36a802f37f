"""The centre's domain, services, storage and the one composition root (:mod:`intake.app`)."""
