from llmfleet.cli.main import main

main()
