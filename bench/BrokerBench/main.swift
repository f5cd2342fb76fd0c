print("BrokerBench: written next")
