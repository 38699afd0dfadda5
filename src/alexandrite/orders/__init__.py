"""The order lifecycle every service shares: status records and history, the order-event consumer
(in order, once, single writer), the orders-in-status gauge and the words customers read for statuses."""
