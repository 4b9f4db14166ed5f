// AMQP module.
