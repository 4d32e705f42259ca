from fer_export.cli import main

main()
