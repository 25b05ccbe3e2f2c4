"""Files written for the isolated side from the source-to-destination mapping of a load."""
