"""The Slack bot (slack-bolt). Shares the store and the adapter registry with the trainer; imports no trainer code."""
