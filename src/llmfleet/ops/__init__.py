"""Operations on a host or a running fleet: doctor, load tests, soak, drills and the gateway benchmark."""
