"""What the product reports beside routing: what it costs, and the charts that show it."""
