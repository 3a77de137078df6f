"""Database access: one SQLAlchemy 2 engine (psycopg 3 driver) and the app's two tables."""
import os
from datetime import datetime

from sqlalchemy import ForeignKey, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

# e.g. postgresql+psycopg://example_fastapi_app@/example_fastapi?host=/run/postgresql&port=5432
engine = create_engine(os.environ["DATABASE_URL"], pool_size=10, max_overflow=10, pool_pre_ping=True)
SessionLocal = sessionmaker(engine, expire_on_commit=False)


def quota_clock() -> datetime:
    """The instant quota_ext's windows use: now(), or quota.clock_override when a test pins it
    (a superuser-only setting the app's role cannot read, but quota.quota_clock() applies)."""
    with engine.connect() as conn:
        return conn.scalar(text("SELECT quota.quota_clock()"))


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str]
    title: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(server_default="now()")


class Message(Base):
    # Inserting a row consumes one "messages" unit for user_id: quota.enforce_on_insert's
    # trigger (schema.sql) raises QT429 when the day's limit is reached.
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    user_id: Mapped[str]
    content: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(server_default="now()")
