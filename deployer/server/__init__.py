"""The MLflow server as we run it: one entrypoint for the container and `deployer local`."""
