from twisted.application.service import ServiceMaker

stompbroker = ServiceMaker(
    "stompbroker", "stompbroker.tap", "A STOMP 1.0/1.1/1.2 message broker", "stompbroker"
)
