from cookiematch.cli.main import main

main()
