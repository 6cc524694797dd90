"""The world a stack drives in: scenario, road and lane frame, actors, vehicle interface, safety."""
